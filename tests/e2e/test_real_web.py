"""Real-web HTTP semantics (issue #35), end to end: one local site that behaves like real
ones (tests/e2e/quirks_site.py: two origins on two loopback ports) crawled by

  scrapy   plain Scrapy 2.8 (Debian's, /usr/bin/python3) running
           tests/e2e/scrapy_quirks_spider.py: ROBOTSTXT_OBEY, DEPTH_LIMIT, no delay, only
           the site's hosts: the reference;
  cpp      spiderhub: broker + 2 nodes + the C++ sample worker (worker-sample,
           spiderhub.samples.SiteSpider, maxDepth, sameDomain false);
  py       the same broker and nodes with the Python sample worker
           (python3 -m spiderhub.worker, spiderhub.samples:LinkSpider);
  bridge   the same spider file through the Scrapy bridge (python3 -m spiderhub.scrapy_bridge):
           nodes download, Scrapy parses;

and, the sitemap scenario (issue #35 item 5), each also reading the sitemaps that A's
robots.txt names (an index, two gzip sitemaps, three orphan pages no page links to):

  scrapy-sitemaps  the same Scrapy spider with `-a sitemaps=1`: Scrapy's own SitemapSpider
                   from A's robots.txt, plus the start page: the reference;
  cpp-sitemaps     the C++ sample worker with "sitemaps": true in its arguments;
  py-sitemaps      the Python sample worker with "sitemaps": true.

The reference is kept honest first: Scrapy's set of (url, title) must be the set the site
defines (QuirksSite.expected()), except where quirks_site.scrapy_deviations() documents
that Scrapy 2.8 differs (and why). cpp and py are compared with the site's set (for py
without B's page that only a link on B leads to: LinkSpider follows links to the start
URL's host only; a redirect to B it follows); the bridge, which parses with Scrapy, with
what Scrapy itself reported. The sitemap crawls likewise, against the site's set with the
orphans (QuirksSite.expected(sitemaps=True)): the same for all groups, since the depth a
crawler gives a sitemap's pages (the samples 1, Scrapy 3) changes no page within the
depth limit (quirks_site's docstring).

For every crawler and every group of the site (redirects, encodings, urls, calendar,
sitemaps: the orphans, expected only of the sitemap crawls) the SET of page URLs (an
item's finalUrl when it has one, else its url) and their titles must equal the
reference, every page once in the items, and every page downloaded once by the site's own
counters (pages a crawler must not fetch: 0). One line per group (ok /
FAIL, with missing, extra and wrong-title pages, duplicates, error items, downloads and
404s); a line for the orphans (found by every sitemap crawl) and one for the sitemap files
(each downloaded exactly once by a sitemap crawl, never by the others; robots.txt
downloads are shown, not asserted: Scrapy and the nodes fetch it for the rules as well).
The exit code is 1 when any group or crawl failed.

--only scrapy,cpp,py,bridge,cpp-sitemaps,py-sitemaps picks crawlers (scrapy always runs,
scrapy-sitemaps with any sitemap crawl: they are the references); --keep keeps the work
directory.
"""
import collections
import json
import os
import shutil
import subprocess
import sys
import time
import traceback

import harness as h
import quirks_site

PYTHON = "/usr/bin/python3"  # Debian's python3-scrapy lives there
DEPTH = 5
CPP_CLS = "spiderhub.samples.SiteSpider"
PY_CLS = "py.LinkSpider"
BRIDGE_CLS = "scrapy.quirks"
RUN_TIMEOUT = 40  # a run of this site takes ~2 s; a stuck one costs this much
CRAWLERS = ("scrapy", "cpp", "py", "bridge", "scrapy-sitemaps", "cpp-sitemaps", "py-sitemaps")
COMPARED = ("redirects", "encodings", "urls", "calendar", "sitemaps")
ORPHANS = ("orphan-1", "orphan-2", "orphan-3")


def parse_args():
    return h.parse_args(__doc__, only="comma-separated crawlers (default: all)", keep=True)


class Crawl:
    def __init__(self, name):
        self.name = name
        self.items = []
        self.counts = None   # the site's counters during this crawl (QuirksSite.since)
        self.error = None    # the crawl itself went wrong (timeout, crash)
        self.seconds = 0.0
        self.run = None


def read_jsonl(path):
    items = []
    if os.path.exists(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        items.append(json.loads(line))
                    except ValueError:
                        items.append({"url": "", "error": f"unparsable line {line[:200]!r}"})
    return items


def final_url(item):
    return item.get("finalUrl") or item.get("url") or ""


def is_page(item):
    """An item of a page that came (no error, status 200 or none given)."""
    return not item.get("error") and not item.get("errorKind") and \
        int(item.get("status") or 200) == 200


# ---- the crawls --------------------------------------------------------------------


def with_sitemaps(name):
    return name.endswith("-sitemaps")


def crawl_scrapy(env, site, name="scrapy"):
    c = Crawl(name)
    out = env.path(f"items-{name}.jsonl")
    spider = os.path.join(env.args.source, "tests", "e2e", "scrapy_quirks_spider.py")
    argv = [PYTHON, "-m", "scrapy", "runspider", spider,
            "-a", f"start_url={site.start_url()}", "-a", "hosts=127.0.0.1",
            "-s", f"DEPTH_LIMIT={DEPTH}", "-s", "DOWNLOAD_DELAY=0",
            "-s", "AUTOTHROTTLE_ENABLED=False", "-s", "TELNETCONSOLE_ENABLED=False",
            "-s", "REQUEST_FINGERPRINTER_IMPLEMENTATION=2.7", "-s", "FEED_EXPORT_ENCODING=utf-8",
            "-s", "CLOSESPIDER_TIMEOUT=45", "-s", "LOG_LEVEL=DEBUG", "-O", out,
            "-a", f"sitemaps={int(with_sitemaps(name))}"]
    before = site.snapshot()
    t0 = time.monotonic()
    with open(env.path(f"{name}.log"), "wb") as log:
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=env.dir,
                             start_new_session=True)
        p.name, p.log_path = name, env.path(f"{name}.log")
        env.procs.append(p)
        try:
            rc = p.wait(60)
        except subprocess.TimeoutExpired:
            env.stop(p)
            rc = None
    c.seconds = time.monotonic() - t0
    c.counts = site.since(before, site.snapshot())
    c.items = read_jsonl(out)
    if rc != 0:
        c.error = f"scrapy runspider exited {rc}: {env.log(name)[-1500:]}"
    return c


def nodes_online(broker, n, timeout=30):
    h.wait_until(f"{n} node(s) online", lambda: sum(
        x["isOnline"] for x in h.api("GET", broker, "/api/v1.0/nodes")[1]) == n, timeout=timeout)


def create_job(broker, name, cls, arguments):
    status, job = h.api("POST", broker, "/api/v1.0/jobs", {
        "name": name, "jobType": "block", "cron": "0 0 1 1 *",
        "properties": {"FullClassName": cls, "Arguments": json.dumps(arguments)}})
    assert status == 201, (status, job)
    return job


def last_exception(env, proc):
    """The last line of a process's log that names an exception, or ""."""
    lines = [ln for ln in env.log(proc.name).splitlines()
             if "Error" in ln or "Exception" in ln or "error:" in ln]
    return lines[-1].strip()[:400] if lines else ""


def crawl_spiderhub(env, broker, site, name, worker, job, output, one_run=False):
    """Triggers `job` (served by the already started `worker` process), waits for the run's
    end, and stops the worker (`one_run`: it exits by itself after the run)."""
    c = Crawl(name)
    before = site.snapshot()
    t0 = time.monotonic()
    try:
        h.trigger_run(broker, job["id"])

        def ended():
            r = h.run_of(broker, job["id"]) or {}
            if r.get("status") in ("Success", "Failed", "Exited") and r.get("left", 0) == 0:
                return r
            if worker.poll() not in (None, 0):
                raise AssertionError(f"the worker exited {worker.returncode}: "
                                     f"{env.log(worker.name)[-1500:]}")
            return None
        deadline = time.monotonic() + RUN_TIMEOUT
        while True:
            try:
                r = ended()
            except AssertionError as e:
                c.error = str(e)
                break
            except Exception:  # the broker is busy: ask again
                r = None
            if r:
                c.run = r
                if r["status"] != "Success":
                    c.error = f"run ended {r['status']}: {r}"
                break
            if time.monotonic() > deadline:
                r = h.run_of(broker, job["id"]) or {}
                c.error = (f"the run did not end within {RUN_TIMEOUT}s: status "
                           f"{r.get('status')}, total {r.get('total')}, left {r.get('left')}, "
                           f"success {r.get('success')}, error {r.get('error')}")
                if r.get("left") == 0:
                    c.error += " (nothing left to download: the worker did not ack a result)"
                exc = last_exception(env, worker)
                if exc:
                    c.error += f"; {worker.name} logged: {exc}"
                if r.get("identity"):  # stop it, so it does not download during the next crawl
                    h.api("POST", broker, f"/api/v1.0/runs/{r['identity']}/exit")
                break
            time.sleep(0.3)
    except AssertionError as e:
        c.error = str(e)
    c.seconds = time.monotonic() - t0
    if one_run:
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            env.stop(worker)
    else:
        env.stop(worker)
    time.sleep(0.3)  # a download of a stopped run may still be on its way
    c.counts = site.since(before, site.snapshot())
    c.items = read_jsonl(output)
    return c


def crawl_cpp(env, broker, site, name="cpp"):
    out = env.path(f"items-{name}.jsonl")
    worker = env.start_worker(broker, name=f"worker-{name}", cls=CPP_CLS, runs=1)
    args = {"startUrl": site.start_url(), "maxDepth": DEPTH, "output": out, "sameDomain": False}
    if with_sitemaps(name):
        args["sitemaps"] = True
    job = create_job(broker, name, CPP_CLS, args)
    return crawl_spiderhub(env, broker, site, name, worker, job, out, one_run=True)


def crawl_py(env, broker, site, name="py"):
    out = env.path(f"items-{name}.jsonl")
    cls = PY_CLS + (".sitemaps" if with_sitemaps(name) else "")  # one worker per job
    worker = h.start_py_worker(env, broker.base + "/", cls, out, name=f"worker-{name}")
    args = {"startUrl": site.start_url(), "maxDepth": DEPTH}
    if with_sitemaps(name):
        args["sitemaps"] = True
    job = create_job(broker, name, cls, args)
    return crawl_spiderhub(env, broker, site, name, worker, job, out)


def crawl_bridge(env, broker, site, name="bridge"):
    out = env.path(f"items-{name}.jsonl")
    src = os.path.join(env.args.source, "clients", "python")
    spider = os.path.join(env.args.source, "tests", "e2e", "scrapy_quirks_spider.py")
    worker = env.spawn(name, [PYTHON, "-m", "spiderhub.scrapy_bridge", spider,
                              "--broker", broker.base + "/", "--token", h.TOKEN,
                              "--class", BRIDGE_CLS, "-o", out,
                              "--state", env.path(f"{name}-state.db"),
                              "-s", f"DEPTH_LIMIT={DEPTH}"],
                   env=dict(os.environ, PYTHONPATH=src))
    job = create_job(broker, name, BRIDGE_CLS,
                     {"start_url": site.start_url(), "hosts": "127.0.0.1"})
    return crawl_spiderhub(env, broker, site, name, worker, job, out)


# ---- comparison ---------------------------------------------------------------------


class Shorten:
    """URLs written as A/path and B/path (the two origins), titles cut."""

    def __init__(self, site):
        self.bases = sorted(((b, o) for o, b in site.bases.items()), key=lambda x: -len(x[0]))

    def url(self, u):
        for b, o in self.bases:
            if u.startswith(b):
                return o + u[len(b):]
        return u

    def title(self, t):
        t = "" if t is None else str(t)
        return repr(t if len(t) <= 60 else t[:57] + "...")


def reference_sets(site, scrapy, sitemaps=False):
    """(the site's set, what Scrapy should report given its documented deviations, what
    Scrapy reported) as {url: title}."""
    expected = site.expected(sitemaps=sitemaps)
    scrapy_expected = dict(expected)
    for url, (title, _) in site.scrapy_deviations().items():
        if title is None:
            scrapy_expected.pop(url, None)
        else:
            scrapy_expected[url] = title
    scrapy_got = {final_url(i): (i.get("title") or "").strip()
                  for i in scrapy.items if is_page(i)}
    return expected, scrapy_expected, scrapy_got


def compare(site, crawl, reference, group, short):
    """Problems (strings) of one crawler in one group against `reference` {url: title}."""
    problems = []
    ref = {u: t for u, t in reference.items() if site.classify(u)[1] == group}
    pages = [i for i in crawl.items if is_page(i) and site.classify(final_url(i))[1] == group]
    got = {}
    for i in pages:
        got.setdefault(final_url(i), (i.get("title") or "").strip())
    missing = sorted(set(ref) - set(got))
    extra = sorted(set(got) - set(ref))
    wrong = sorted(u for u in set(ref) & set(got) if ref[u].strip() != got[u])
    if missing:
        problems.append(f"missing {len(missing)}: " + ", ".join(
            f"{short.url(u)} {short.title(ref[u])}" for u in missing))
    if extra:
        problems.append(f"extra {len(extra)}: " + ", ".join(
            f"{short.url(u)} {short.title(got[u])}" +
            (f" (url {short.url(i['url'])})" if i.get("finalUrl") else "")
            for u in extra for i in [next(x for x in pages if final_url(x) == u)]))
    if wrong:
        problems.append(f"wrong title {len(wrong)}: " + ", ".join(
            f"{short.url(u)} got {short.title(got[u])} want {short.title(ref[u])}"
            for u in wrong))
    twice = collections.Counter(final_url(i) for i in pages)
    dupes = sorted((u, n) for u, n in twice.items() if n > 1)
    if dupes:
        problems.append("items of one page more than once: " + ", ".join(
            f"{short.url(u)} x{n} (as " + ", ".join(sorted(
                short.url(i["url"]) for i in pages if final_url(i) == u)) + ")"
            for u, n in dupes))
    errors = [i for i in crawl.items if not is_page(i)
              and site.classify(final_url(i))[1] == group]
    if errors:
        problems.append(f"error items {len(errors)}: " + ", ".join(
            f"{short.url(final_url(i))} status {i.get('status')} "
            f"{i.get('errorKind') or ''} {str(i.get('error') or '')[:80]}".rstrip()
            for i in errors))
    # The site's counters: each page of the reference downloaded once, the others never.
    if crawl.counts is not None:
        bad = []
        for pid, want in site.expected_downloads().items():
            if site.group_of(pid) != group:
                continue
            if not pid.startswith("calendar:"):
                p = site.pages[pid]
                want = 1 if site.url(p.path, p.origin) in reference else 0
            n = crawl.counts["pages"].get(pid, 0)
            if n != want:
                bad.append(f"{pid} x{n} (want {want})")
        extra_months = sorted(int(p.split(":")[1]) for p, n in crawl.counts["pages"].items()
                              if p.startswith("calendar:") and n and int(p.split(":")[1]) > DEPTH + 1)
        if extra_months:
            bad.append(f"calendar months beyond {DEPTH + 1} requested: {extra_months[:5]}"
                       f"{'...' if len(extra_months) > 5 else ''}")
        if bad:
            problems.append("server downloads: " + ", ".join(bad))
        if group == "encodings":
            utf8 = crawl.counts["pages"].get("gbk-query-utf8", 0)
            if utf8:
                problems.append(f"?q=中文 of the GBK page sent as UTF-8 (%E4%B8%AD%E6%96%87) "
                                f"{utf8}x, GBK (%D6%D0%CE%C4) "
                                f"{crawl.counts['pages'].get('gbk-query', 0)}x: browsers and "
                                "Scrapy encode the query in the page's encoding")
        nf = sorted(f"{o}{t} x{n}" for (o, t), n in crawl.counts["404"].items()
                    if n and quirks_site.guess_group(o, t) == group)
        if nf:
            problems.append("404s: " + ", ".join(nf))
    return problems


def unattributed(site, crawl, short):
    """Items and 404s that belong to no group (a link resolved somewhere unexpected)."""
    out = []
    # (the start page is in group "urls"; robots.txt and sitemaps are never items)
    odd = [i for i in crawl.items if site.classify(final_url(i))[1] not in COMPARED]
    if odd:
        out.append("items outside every group: " + ", ".join(
            f"{short.url(final_url(i))} {short.title(i.get('title'))}" for i in odd))
    if crawl.counts is not None:
        nf = sorted(f"{o}{t} x{n}" for (o, t), n in crawl.counts["404"].items()
                    if n and quirks_site.guess_group(o, t) is None)
        if nf:
            out.append("404s outside every group: " + ", ".join(nf))
    return out


def sitemap_problems(site, crawl):
    """Problems of one crawl with the sitemap files (each downloaded once by a sitemap
    crawl, never by the others) and, for a sitemap crawl, the orphans (all found)."""
    if crawl.counts is None:
        return []
    want = int(with_sitemaps(crawl.name))
    problems = [f"{pid} downloaded x{n} (want {want})"
                for pid, n in site.sitemap_fetches(crawl.counts).items() if n != want]
    if want:
        found = {final_url(i) for i in crawl.items if is_page(i)}
        missing = [pid for pid in ORPHANS if site.url(site.pages[pid].path) not in found]
        if missing:
            problems.append(f"orphans not found: {missing}")
    return problems


def sitemap_summary(site, crawl):
    """One crawl's sitemap downloads, orphans found and robots.txt downloads, in a few words."""
    if crawl.counts is None:
        return f"{crawl.name} no counts"
    f = site.sitemap_fetches(crawl.counts)
    found = {final_url(i) for i in crawl.items if is_page(i)}
    orphans = sum(site.url(site.pages[pid].path) in found for pid in ORPHANS)
    return (f"{crawl.name} index/1/2 x{f['sitemap-index']}/{f['sitemap-1']}/{f['sitemap-2']}, "
            f"orphans {orphans}/{len(ORPHANS)}, robots.txt A x"
            f"{crawl.counts['pages'].get('robots-A', 0)}")


def selected_crawlers(only):
    """The crawlers to run, in order: the references first (scrapy always, scrapy-sitemaps
    with any sitemap crawl), then the chosen ones."""
    chosen = [c.strip() for c in only.split(",") if c.strip()] or list(CRAWLERS)
    unknown = set(chosen) - set(CRAWLERS)
    if unknown:
        sys.exit(f"unknown crawler(s) {sorted(unknown)}; known: {list(CRAWLERS)}")
    refs = ["scrapy"] + (["scrapy-sitemaps"] if any(map(with_sitemaps, chosen)) else [])
    return refs + [c for c in CRAWLERS if c in chosen and c not in refs]


def run_crawls(env, site, names):
    """{name: Crawl}; the broker and two nodes start before the first spiderhub crawl."""
    crawls = {}
    broker = None
    for name in names:
        if name.startswith("scrapy"):
            crawls[name] = crawl_scrapy(env, site, name)
            continue
        try:
            if broker is None:
                broker = env.start_broker()
                env.start_node(broker, "node1")
                env.start_node(broker, "node2")
                nodes_online(broker, 2)
            crawl = {"cpp": crawl_cpp, "py": crawl_py, "bridge": crawl_bridge}[
                name.split("-")[0]]
            crawls[name] = crawl(env, broker, site, name)
        except Exception as e:  # report, then go on with the next crawler
            traceback.print_exc()
            c = Crawl(name)
            c.error = f"{type(e).__name__}: {str(e)[:800]}"
            crawls[name] = c
    return crawls


def references(site, crawls, short):
    """{crawler: {url: title} it should report}, from the site's sets and what the Scrapy
    references reported (printed)."""
    refs = {}
    for ref, sitemaps in (("scrapy", False), ("scrapy-sitemaps", True)):
        if ref not in crawls:
            continue
        expected, scrapy_expected, scrapy_got = reference_sets(site, crawls[ref], sitemaps)
        tail = "-sitemaps" if sitemaps else ""
        # LinkSpider follows links to the start URL's host only (the C++ SiteSpider runs with
        # sameDomain false, Scrapy with allowed_domains 127.0.0.1: both origins).
        refs.update({ref: scrapy_expected, "cpp" + tail: expected,
                     "py" + tail: site.expected(other_origins=False, sitemaps=sitemaps)})
        if not sitemaps:
            refs["bridge"] = scrapy_got
        s = crawls[ref]
        print(f"real web: {ref} (Scrapy 2.8 reference): {len(expected)} pages expected, "
              f"{sum(map(is_page, s.items))} page items ({len(scrapy_got)} URLs) in "
              f"{s.seconds:.1f}s, {sum(s.counts['raw'].values())} requests; robots.txt A x"
              f"{s.counts['pages'].get('robots-A', 0)}, B x{s.counts['pages'].get('robots-B', 0)}",
              flush=True)
        if sitemaps:
            continue
        for url, (title, why) in site.scrapy_deviations().items():
            seen = url in scrapy_got
            print(f"     documented Scrapy deviation {short.url(url)}: {why}"
                  + (" [Scrapy no longer deviates here]" if seen and title is None else ""),
                  flush=True)
    return refs


def report(title, per):
    """Prints one ok/FAIL line for {crawler: problems} and the problems; True when ok."""
    bad = [n for n, p in per.items() if p]
    summary = "; ".join(f"{n} {'FAIL' if per[n] else 'ok'}" for n in per)
    print(f"{'FAIL' if bad else 'ok  '} {title}: {summary}", flush=True)
    for n in bad:
        for p in per[n]:
            print(f"     {n}: {p}", flush=True)
    return not bad


def main():
    args = parse_args()
    names = selected_crawlers(args.only)
    probe = subprocess.run([PYTHON, "-c", "import scrapy"], capture_output=True)
    assert probe.returncode == 0, "Debian's python3-scrapy is missing (scripts/setup installs it)"
    if args.keep:
        os.environ["SPIDERHUB_KEEP_E2E"] = "1"
    t_all = time.monotonic()
    failed = []
    with h.Env(args, "real-web") as env, quirks_site.QuirksSite(depth=DEPTH) as site:
        # A relink of the binary during the run must not change it under the test.
        binary = env.path("spiderhub")
        shutil.copy2(args.bin, binary)
        args.bin = binary
        short = Shorten(site)
        crawls = run_crawls(env, site, names)
        print(f"real web: site {site.bases['A']} (second origin {site.bases['B']}), depth "
              f"limit {DEPTH}", flush=True)
        refs = references(site, crawls, short)
        for name, c in crawls.items():
            if c.error:
                print(f"FAIL crawl {name} ({c.seconds:.1f}s): {c.error[:1500]}", flush=True)
                failed.append(f"crawl {name}")
            elif not name.startswith("scrapy"):
                r = c.run or {}
                print(f"     crawl {name}: run {r.get('status')} in {c.seconds:.1f}s, "
                      f"{len(c.items)} items, {sum(c.counts['raw'].values())} requests "
                      f"(total {r.get('total')}, success {r.get('success')}, "
                      f"error {r.get('error')}, skipped {r.get('skipped')})", flush=True)

        for group in COMPARED:
            if not report(group, {n: compare(site, c, refs[n], group, short)
                                  for n, c in crawls.items()}):
                failed.append(group)
        others = {n: unattributed(site, c, short) for n, c in crawls.items()}
        if any(others.values()):
            report("other", others)
            failed.append("other")
        if not report("sitemap files and orphans",
                      {n: sitemap_problems(site, c) for n, c in crawls.items()}):
            failed.append("sitemap files")
        print("     " + "; ".join(sitemap_summary(site, c) for c in crawls.values()),
              flush=True)
    took = time.monotonic() - t_all
    print(f"real web: {len(failed)} failed {failed} in {took:.0f}s" if failed else
          f"real web: all passed in {took:.0f}s", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
