"""A policy behind a websocket, in openpi's wire protocol, and the client that drives it.

`server.serve(policy, host, port, token)` answers each msgpack observation with an action chunk
(plus the subtask and skill the policy announced); `client.PolicyClient(url)` is the other end,
used by `atom-train rollout --server` and by robot code; `queue.ActionQueue` feeds a robot one
action per control step and fetches the next chunk while the current one executes.
"""
