"""The simulated ECS host (introspection API and IMDSv2 on loopback) the agent's end-to-end tests use."""

from tests.agent.test_agent_e2e import ecs_host  # noqa: F401 - a fixture, shared
