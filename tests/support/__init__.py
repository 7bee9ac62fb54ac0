"""Helpers the tests share: real servers started on spare ports, waited on with deadlines."""
