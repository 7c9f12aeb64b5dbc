"""mcp-edge: put MCP servers on the internet behind nginx with pyinfra, and keep them there."""
