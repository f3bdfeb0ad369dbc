"""``python -m consumer``: the consumer service on uvicorn (see shared.runner)."""

from consumer.app import create_app
from consumer.config import ConsumerSettings
from shared.runner import run_service

if __name__ == "__main__":
    run_service(ConsumerSettings(), create_app)
