"""The console's pages, one module each; each endpoint parses, calls one service, renders."""
