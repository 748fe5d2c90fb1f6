"""The benchmarks' child processes: ``python -m netlab.bench peer|udp-server|peer-server ...``.

The parent starts them through the service's launcher
(:func:`netlab.service.launch.start_child`) and reads what they print.
"""

import sys

from netlab.bench import baseline, measure, peers

ROLES = {"peer": baseline.main, "udp-server": measure.main, "peer-server": peers.main}

if __name__ == "__main__":
    ROLES[sys.argv[1]](sys.argv[1:])
