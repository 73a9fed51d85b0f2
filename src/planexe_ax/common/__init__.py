"""What more than one service needs and no service owns.

Log lines (``logs``), trace export (``telemetry``), the egress policy for outbound HTTP (``egress``), SMTP
sending (``smtp``), owner-only secret files (``secretfile``), one-time inbox answer links (``inbox_links``),
and the event loop and garbage collector processes run with (``eventloop``). Import the module you need; this
package imports nothing at import time.
"""

__all__: list[str] = []
