"""Shared vocabulary of the service: the contract, the models, the policies, the settings."""
