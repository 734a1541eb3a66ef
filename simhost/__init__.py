"""A simulated ECS container instance for trying and testing ECS ID Mapper on one machine.

It serves what the agent reads on a real host, on loopback ports: the ECS agent introspection API
(`/v1/metadata`, `/v1/tasks`) and the EC2 instance metadata service (IMDSv2, token required), with tasks that
start, run, stop, stay listed a while and vanish. `python -m simhost` runs one; `python -m simhost.demo` runs it
with the server and the agent. Tests drive `SimulatedHost` and `SimHostServer` directly.
"""

from simhost.host import SimContainer, SimTask, SimulatedHost
from simhost.server import SimHostServer

__all__ = ["SimContainer", "SimHostServer", "SimTask", "SimulatedHost"]
