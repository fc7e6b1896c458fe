"""``python -m integrations.simulator --port 8100 --portal-url http://127.0.0.1:8000 …``"""

from integrations.simulator.config import parse_args
from integrations.simulator.server import serve

if __name__ == "__main__":
    serve(parse_args())
