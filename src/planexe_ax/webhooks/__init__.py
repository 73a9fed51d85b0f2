"""Webhooks: the delivery service and the signed HTTP sender."""

from planexe_ax.webhooks.send import BadTarget, Sender, check_target
from planexe_ax.webhooks.service import WebhookService, retry_delay_s

__all__ = ["BadTarget", "Sender", "WebhookService", "check_target", "retry_delay_s"]
