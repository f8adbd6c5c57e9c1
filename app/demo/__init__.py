"""The embedded demo: synthetic data generator, demo upstreams, and the runner that starts them.

May import anything in `app`; nothing outside `app.demo` and `app.cli` imports it.
"""
