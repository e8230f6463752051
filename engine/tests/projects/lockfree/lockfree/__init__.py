"""lockfree: a small shop (customers, orders) whose migrations follow the lock-safe patterns."""
