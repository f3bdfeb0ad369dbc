"""``python -m booking``: the booking service on uvicorn (see shared.runner)."""

from booking.app import create_app
from booking.config import BookingSettings
from shared.runner import run_service

if __name__ == "__main__":
    run_service(BookingSettings(), create_app)
