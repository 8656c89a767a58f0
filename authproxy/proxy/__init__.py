"""The data plane: routes, headers, forwarding and WebSockets.

It sees auth only through the `RouteAuth` protocol it defines.
"""
