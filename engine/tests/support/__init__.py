"""Helpers for the test suite: throwaway PostgreSQL clusters and settings built around them."""
