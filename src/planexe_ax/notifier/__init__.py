"""The notifier: mails the people an inbox item is for, with a one-time link that answers it."""

from planexe_ax.notifier.mail import recipients
from planexe_ax.notifier.service import Notifier

__all__ = ["Notifier", "recipients"]
