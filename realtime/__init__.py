"""The live view of every cart.

The projection applies committed domain events to each cart's view model in Redis with a
compare-and-set Lua script (an event of version v applies only onto view version v-1), and the
hub fans applied updates out to WebSocket subscribers of channel ``teamcart:{id}`` in every
server process. Imports ``domain``, redis and msgspec, never ``app`` (nor Litestar: the app
hands in what it needs, such as the channel link and the view loader).

- ``cart_view``: the cart view of API.md, built from a ``TeamCart``.
- ``view_store``: the Redis view model and its Lua scripts (``view_*.lua``).
- ``presence``: who is connected, a sorted set with a TTL (``presence_touch.lua``).
- ``projection``: an outbox event → compare-and-set → publish; rebuilds on a gap or a miss.
- ``protocol``: the WebSocket messages, the frames between processes, and one client's
  stream with the version rules (no I/O).
- ``hub``: this process's sockets, grouped by cart, their writers and presence heartbeat.

Design: ``docs/adr/0004-real-time.md``.
"""
