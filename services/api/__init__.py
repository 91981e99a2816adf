"""The read API: customer reads from the read models, admin writes published as commands."""
