"""``python -m gateway``: the gateway service on uvicorn (see shared.runner)."""

from gateway.app import create_app
from gateway.config import GatewaySettings
from shared.runner import run_service

if __name__ == "__main__":
    run_service(GatewaySettings(), create_app)
