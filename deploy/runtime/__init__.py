"""The runtime: what drives Docker, mirroring the core's one-way flow.

process (run, stream, wait_until) <- docker (the engine through the SDK, compose and builds through the
CLI) <- envfile (.env), preflight (checks that only read), images (base image, wheels, build, push)
<- stack (preflight -> render -> build -> start -> wait) ; smoke runs the smoke suite as a child pytest.
http (a total deadline, a body cap and a shape check for every request) sits under net, status and router.
"""
