"""Run an unchanged Scrapy spider on spiderhub: the nodes download, Scrapy parses.

Two forms (docs/python.md, "Scrapy spiders, unchanged"):

``spiderhub-scrapy crawl NAME [options]``
    in a Scrapy project directory, as ``scrapy crawl NAME``: the project's settings,
    pipelines and middlewares, ``-a``, ``-s``, ``-o``/``-O``/``-t``, ``-L``, ``--logfile``,
    ``--nolog``, ``--pidfile``, ``--profile`` as Scrapy takes them; plus ``--broker``,
    ``--token``, ``--class`` and ``--items`` (the exactly-once items file).
``spiderhub-scrapy SPIDER.py [options]``
    a spider file, as ``scrapy runspider`` loads it; ``-o`` names the exactly-once items
    file (as before the crawl form came).

The bridge connects to the broker's worker hub as ``--class`` (default: the spider's
name), waits for a run of a job whose FullClassName it is, and runs Scrapy's engine with
its scheduler and downloader swapped for the broker's (spiderhub.scrapy_components): the
duplicate filter and every downloader middleware's request side run here before a
request is pushed (with Scrapy's fingerprint as the broker's dedup key and the request
itself as payload), the nodes download, and each result comes back through the
middlewares' response side to the callback. Several bridges may serve one run (job
property WorkersPerRun): any of them takes any result.

Exit status: 0 when the run ended; 2 for bad input (a setting the bridge cannot honour,
no such spider, a start request it cannot hand to the broker — nothing was pushed then —
or requests dropped later as not serializable); 1 when Scrapy could not start the crawl.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys

from .hub import split_brokers
from .scrapy_requests import (DownloadError, redirected_request, replay_request,  # noqa: F401
                              request_hash, result_url, url_problem)

EXIT_BAD_INPUT = 2
DEFAULT_BROKER = "http://127.0.0.1:55626/"
logger = logging.getLogger("spiderhub.scrapy")


def __getattr__(name: str):
    """The Scrapy components under their former home (settings may name
    spiderhub.scrapy_bridge.ResultHandler), imported when asked for: Scrapy's modules are
    not loaded before the command line says what to run."""
    if name in ("ResultHandler", "SpiderhubScheduler", "SpiderhubDownloader",
                "BridgeSpiderMiddleware"):
        from . import scrapy_components
        return getattr(scrapy_components, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class BadInput(Exception):
    """Input the bridge refuses before anything is pushed (exit status 2)."""


def add_bridge_options(parser) -> None:
    group = parser.add_argument_group("spiderhub")
    group.add_argument("--broker", default=os.environ.get("SPIDERHUB_BROKER", DEFAULT_BROKER),
                       help="broker base URL, or several comma-separated (brokers sharing one "
                            "database: the bridge connects to the active one); default "
                            "$SPIDERHUB_BROKER or " + DEFAULT_BROKER)
    group.add_argument("--token", default=os.environ.get("SPIDERHUB_TOKEN", ""),
                       help="worker secret (default $SPIDERHUB_TOKEN)")
    group.add_argument("--class", dest="cls",
                       help="FullClassName of the jobs (default: the spider's name)")
    group.add_argument("--items", metavar="FILE",
                       help="items as JSON lines, each with its page's requestHash, exactly "
                            "once per page across restarts of this bridge")


def bridged_spider_class(spidercls):
    """``spidercls`` with the bridge's settings applied over everything else (after the
    spider's custom_settings, which Scrapy merges last)."""
    from .scrapy_settings import apply

    def update_settings(cls, settings):
        spidercls.update_settings(settings)
        apply(settings)
    return type(spidercls.__name__, (spidercls,), {
        "update_settings": classmethod(update_settings),
        "__module__": spidercls.__module__, "__qualname__": spidercls.__qualname__,
        "__doc__": spidercls.__doc__})


def check_settings(settings, spidercls) -> list[str]:
    """Refuses the crawl (BadInput) for settings the bridge cannot honour; returns the
    warnings about the ones it does not apply."""
    from .scrapy_settings import review
    effective = settings.copy()
    spidercls.update_settings(effective)
    refusals, warnings = review(effective, spidercls)
    if refusals:
        raise BadInput("refused: " + "\n  refused: ".join(refusals))
    return warnings


def job_arguments(run: dict) -> dict:
    """A job's Arguments that are a JSON object: spider arguments (as ``-a``)."""
    text = run.get("arguments") or ""
    if not text:
        return {}
    try:
        args = json.loads(text)
    except ValueError:
        args = None
    if not isinstance(args, dict):
        logger.warning("spiderhub-scrapy: the job's Arguments are not a JSON object; no "
                       "spider arguments taken from them")
        return {}
    return args


def run_bridge(spidercls, settings, spargs: dict, broker: str, token: str, cls: str | None,
               items: str | None) -> int:
    """Serves one run with ``spidercls``; the exit status."""
    from scrapy.crawler import CrawlerProcess
    from .scrapy_hub import Bridge, ItemsFile
    warnings = check_settings(settings, spidercls)
    process = CrawlerProcess(settings)  # Scrapy's logging from here on
    for w in warnings:
        logger.warning("spiderhub-scrapy: %s", w)
    cls = cls or spidercls.name
    bridge = Bridge(broker, token, cls, log=lambda m: logger.info("%s", m),
                    sink=ItemsFile(items) if items else None)
    logger.info("spiderhub-scrapy: waiting for a run of class %s at %s", cls, broker)
    run = bridge.wait_for_run()
    logger.info("spiderhub-scrapy: run %s of job %s: %s", run["identity"], run.get("jobId"),
                spidercls.name)
    kwargs = {**job_arguments(run), **spargs}  # the command line wins
    crawler = process.create_crawler(bridged_spider_class(spidercls))
    crawler.spiderhub = bridge
    process.crawl(crawler, **kwargs)
    try:
        process.start()
    finally:
        bridge.stop()
    print("spiderhub-scrapy: " + json.dumps({**bridge.stats,
                                             "unserializable": bridge.unserializable}),
          file=sys.stderr, flush=True)
    if bridge.fatal:
        print(f"spiderhub-scrapy: {bridge.fatal}; nothing was pushed", file=sys.stderr)
        return EXIT_BAD_INPUT
    if process.bootstrap_failed:
        return 1
    if bridge.unserializable:
        print(f"spiderhub-scrapy: {bridge.unserializable} requests were not crawled: they "
              "cannot be handed to the broker (see the errors above)", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


def _profiled(path: str | None, fn, *args):
    if not path:
        return fn(*args)
    import cProfile
    p = cProfile.Profile()
    try:
        return p.runcall(fn, *args)
    finally:
        p.dump_stats(path)
        print(f"spiderhub-scrapy: cProfile stats written to {path}", file=sys.stderr)


def crawl_main(argv: list[str]) -> int:
    """``spiderhub-scrapy crawl NAME``: Scrapy's crawl command, options and all."""
    from scrapy.cmdline import ScrapyArgumentParser
    from scrapy.commands import ScrapyHelpFormatter
    from scrapy.commands.crawl import Command
    from scrapy.crawler import CrawlerRunner
    from scrapy.exceptions import UsageError
    from scrapy.utils.project import get_project_settings, inside_project
    settings = get_project_settings()
    cmd = Command()
    parser = ScrapyArgumentParser(
        formatter_class=ScrapyHelpFormatter, conflict_handler="resolve",
        usage="spiderhub-scrapy crawl [options] <spider>",
        description="Runs a spider of this Scrapy project as `scrapy crawl` does, with "
                    "spiderhub's nodes downloading: serves one run of a job whose "
                    "FullClassName is --class, then exits.")
    settings.setdict(cmd.default_settings, priority="command")
    cmd.settings = settings
    cmd.add_options(parser)
    add_bridge_options(parser)
    opts, args = parser.parse_known_args(argv)
    if not inside_project():
        raise BadInput("not inside a Scrapy project (no scrapy.cfg here or above): run "
                       "`spiderhub-scrapy crawl` in the project's directory, as `scrapy crawl`")
    try:
        cmd.process_options(args, opts)
    except UsageError as e:
        parser.error(str(e) or "bad options")
    if len(args) != 1:
        parser.error("give one spider name" if not args else
                     f"one spider at a time, got {args}")
    try:
        split_brokers(opts.broker)
    except ValueError as e:
        parser.error(str(e))
    loader = CrawlerRunner._get_spider_loader(settings)
    try:
        spidercls = loader.load(args[0])
    except KeyError:
        names = sorted(loader.list())
        raise BadInput(f"no spider named {args[0]!r} in this project (spiders: "
                       f"{', '.join(names) if names else 'none'})") from None
    return _profiled(opts.profile, run_bridge, spidercls, settings, opts.spargs, opts.broker,
                     opts.token, opts.cls, opts.items)


def load_spider_class(path: str, name: str | None):
    """The Spider subclass of a file, imported as `scrapy runspider` does (its folder on
    the path, under its file name: settings may name its pipelines "myspider.MyPipeline")."""
    import scrapy
    from scrapy.utils.spider import iter_spider_classes
    if not os.path.isfile(path):
        raise BadInput(f"{path}: no such file")
    folder, module = os.path.split(os.path.abspath(path))
    module = os.path.splitext(module)[0]
    sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(module, path)
    if spec is None or spec.loader is None:
        raise BadInput(f"{path}: not a Python file")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[module] = mod
    spec.loader.exec_module(mod)
    found = [c for c in iter_spider_classes(mod) if issubclass(c, scrapy.Spider)
             and (name is None or c.__name__ == name)]
    if len(found) != 1:
        raise BadInput(f"{path}: expected one scrapy.Spider subclass"
                       f"{' named ' + name if name else ''}, found "
                       f"{[c.__name__ for c in found]}")
    return found[0]


def file_main(argv: list[str]) -> int:
    """``spiderhub-scrapy SPIDER.py``: a spider file, as `scrapy runspider`."""
    from scrapy.utils.conf import arglist_to_dict
    from scrapy.utils.project import get_project_settings
    ap = argparse.ArgumentParser(
        prog="spiderhub-scrapy",
        description="Runs an unchanged Scrapy spider on spiderhub: the broker's nodes download "
                    "(with its dedup, politeness and leases), this process parses with Scrapy "
                    "(callbacks, cb_kwargs, meta, middlewares, item pipelines). Serves one run "
                    "of a job whose FullClassName is --class, then exits. In a Scrapy project: "
                    "`spiderhub-scrapy crawl NAME` (see `spiderhub-scrapy crawl -h`).")
    ap.add_argument("spider_file", help="a .py file with a scrapy.Spider subclass")
    ap.add_argument("--spider", help="the class name, when the file has several")
    add_bridge_options(ap)
    ap.add_argument("-o", "--output", dest="items_o", metavar="FILE",
                    help="the same as --items (this form's items file)")
    ap.add_argument("--state", help=argparse.SUPPRESS)  # before payloads; ignored
    ap.add_argument("-s", "--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a Scrapy setting")
    ap.add_argument("-a", dest="spargs", action="append", default=[], metavar="NAME=VALUE",
                    help="a spider argument")
    ap.add_argument("-L", "--loglevel", help="log level (default INFO)")
    ap.add_argument("--profile", metavar="FILE", help="write cProfile stats to FILE")
    a = ap.parse_args(argv)
    try:
        split_brokers(a.broker)
    except ValueError as e:
        ap.error(str(e))
    try:
        sets = arglist_to_dict(a.set)
        spargs = arglist_to_dict(a.spargs)
    except ValueError:
        ap.error("-s and -a take NAME=VALUE")
    settings = get_project_settings()
    settings.set("LOG_LEVEL", "INFO", priority="command")
    settings.setdict(sets, priority="cmdline")
    if a.loglevel:
        settings.set("LOG_LEVEL", a.loglevel, priority="cmdline")
    spidercls = load_spider_class(a.spider_file, a.spider)
    if a.state:
        print("spiderhub-scrapy: --state is ignored: requests travel with the broker now "
              "(their payload)", file=sys.stderr)
    return _profiled(a.profile, run_bridge, spidercls, settings, spargs, a.broker, a.token,
                     a.cls, a.items or a.items_o)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "crawl":
            return crawl_main(argv[1:])
        return file_main(argv)
    except BadInput as e:
        print(f"spiderhub-scrapy: {e}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
