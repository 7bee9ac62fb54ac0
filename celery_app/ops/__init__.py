"""The app's own health: Redis doctor, audit and ACL, queues, failed tasks,
workers, status, metrics and maintenance."""
