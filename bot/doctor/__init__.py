"""`doctor`: every configured part checked against the real services, one finding each.

Used by the `doctor` command, the web home page (in the background) and worker start-up.
"""

from bot.doctor.diagnose import diagnose
from bot.doctor.findings import Finding, Report, log_report
from bot.doctor.storage import Processes

__all__ = ["Finding", "Processes", "Report", "diagnose", "log_report"]
