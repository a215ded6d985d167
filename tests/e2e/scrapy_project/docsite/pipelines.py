from itemadapter import ItemAdapter


class DocPagePipeline:
    """Collapses whitespace in titles and keeps only the path of redirect URLs (so the
    items of two servers on two ports compare equal)."""

    def process_item(self, item, spider):
        a = ItemAdapter(item)
        a["title"] = " ".join((a.get("title") or "").split())
        a["redirect_urls"] = [u.split("/", 3)[-1] for u in a.get("redirect_urls") or []]
        return item
