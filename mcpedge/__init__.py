"""mcp-edge: deploy MCP gateways (supergateway behind nginx) with pyinfra."""
