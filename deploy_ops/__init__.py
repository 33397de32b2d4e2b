"""deploy_ops: safe deploys for a Django + Docker Compose site, with automatic rollback."""

__version__ = "0.1.0"
