"""Shared test support: services, server fixtures and helpers used by several test folders."""
