"""The HTTP service: :class:`Atoll` registers pipelines and builds the Flask app that serves them."""

from atoll.service.app import Atoll, Registered, RegistrationError, UnknownPipeline

__all__ = ["Atoll", "Registered", "RegistrationError", "UnknownPipeline"]
