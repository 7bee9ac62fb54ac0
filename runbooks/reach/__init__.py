"""How a command reaches an environment: its Redis, or a command on its host."""
