"""Placeholder: user documentation follows once the trainer is complete."""
