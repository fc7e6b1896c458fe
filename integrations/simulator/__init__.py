"""A stand-in for the ERP, the WMS and a carrier, served as real HTTP on loopback.

It runs as its own process (``python -m integrations.simulator``) and imports nothing
from Django or the portal: the portal's adapters talk to it exactly as to the real
systems, so the demo runs end to end on one machine and fault-injection tests exercise
the real code path. ``make_server(config)`` starts one in-process (for tests).
"""

from integrations.simulator.config import Config, parse_args
from integrations.simulator.server import SimulatorServer, make_server, serve
from integrations.simulator.webhooks import sign

__all__ = ["Config", "SimulatorServer", "make_server", "parse_args", "serve", "sign"]
