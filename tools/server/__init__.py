"""The studio server: one warm local process per home that the front ends talk to over HTTP.

`files` (discovery, token, pid and lock files), `security` (token, cookie + CSRF, Host/Origin,
path guard), `app` (the FastAPI factory and the core routes), `serve` (running it), `client`
(what the CLIs import: stdlib only, so a warm call stays fast).
"""
