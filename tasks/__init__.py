"""Celery application and thin tasks that call judge.service."""
