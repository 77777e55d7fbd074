"""The reference server of the HTTP binding (issue 15, specs/http.md): `meterspec serve
--store URL`. meterspec.server.app is the Starlette application (it needs the `server`
extra); registry (API keys, meters), events_body (request bodies as store batches), problems
(RFC 9457 documents) and page (the usage page) import no web framework. This module imports
nothing: `meterspec` registers the server's commands through meterspec.server.cli at every
start.
"""
