"""Backbones: the one interface (`Backbone`) and its implementations."""

from vqa.backbones.base import Backbone

__all__ = ["Backbone"]
