"""What the tests share, imported by name (`from tests.support.stack import Stack`); test modules
import only from here, never from one another, and `tests/conftest.py` keeps only fixtures.

    factories      request bodies and ids (`backorder(...)`, `new_id`), the tokens, fast policies
    poll           `eventually`: the one way to wait for something
    stack          the running stack (`running_stack`, `Stack`: the v1 API driver on
                   `client.http.ApiClient`), fresh databases, free ports, missing parts
    messages       what the notification service got: kinds, times, the signed links in them
    chaos          the worker as a process, requests retried as an order system does, the
                   records checker
    cli            the `backorders` console script as a subprocess
    compose        the compose file, resolved by the real `docker compose` binary
    busy           an API front that answers 503 with Retry-After before letting requests through
    task_failures  any workflow task that fails during a test fails it (a pytest plugin)

For the network fault tests: namespaces with links that can be cut (`netns`), a TCP proxy that
delays, resets and black-holes connections (`proxy`), a private PostgreSQL that can be restarted
(`postgres`), a stack whose workers each run on a host of their own (`cluster`), and the surge
they play (`surge`).
"""
