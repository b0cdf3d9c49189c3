"""The live view of every cart.

The projection applies committed domain events to each cart's view model in Redis with a
compare-and-set Lua script (an event of version v applies only onto view version v-1), and the
hub fans applied updates out to WebSocket subscribers of channel ``teamcart:{id}`` in every
server process. Imports ``domain`` and redis, never ``app``.
"""
