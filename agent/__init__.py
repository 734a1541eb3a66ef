"""The ECS ID Mapper host agent: reports this ECS host's containers and their changes to the server."""
