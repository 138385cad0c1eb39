"""MCP host: configured MCP servers and server-side tool-calling loops.

Each model turn of a loop is an ordinary engine request (``AsyncEngine.generate``);
this package will hold the MCP config, the client sessions and the loop itself.
"""
