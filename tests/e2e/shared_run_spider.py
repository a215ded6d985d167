"""A spider for tests/e2e/test_shared_run.py: LinkSpider whose every request carries a
payload naming its URL, and whose items say whether the result brought that payload back
(the broker stores it with the request, the node copies it into the result)."""
import json

from spiderhub.samples import LinkSpider


def payload_of(url):
    return json.dumps({"for": url, "check": len(url) * 7})


class PayloadSpider(LinkSpider):
    def start_requests(self, run):
        for r in super().start_requests(run):
            r.payload = payload_of(r.url)
            yield r

    def parse(self, response):
        for out in super().parse(response):
            # (the worker runs as __main__: its Request class is not spiderhub.worker's)
            if not isinstance(out, dict):
                out.payload = payload_of(out.url)
            else:
                got = json.loads(response.payload) if response.payload else {}
                # A redirect's target keeps the payload of the request it came from.
                out["payloadOk"] = got.get("for") in (response.url, response.final_url) \
                    and got.get("check") == len(got.get("for", "")) * 7
            yield out


class SlowSpider(LinkSpider):
    """LinkSpider taking 20 ms per page: the worker killed in the test is always holding
    results it has not acked."""

    def parse(self, response):
        import time
        time.sleep(0.02)
        yield from super().parse(response)
