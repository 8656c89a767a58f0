"""Where tokens rest: memory, a file, the workers' shared file, Redis.

Implementations of what auth needs from storage; they never call the engine.
"""
