"""The HTTP JSON API of the frontend: a routing table over the public gRPC API
(routes.py), served by Starlette under uvicorn in the frontend process."""
