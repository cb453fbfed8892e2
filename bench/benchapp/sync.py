"""The djsync importers of the benchmark (autodiscovered)."""

import djsync

from .models import Airline, Airport, Flight, Plane, Product


@djsync.register
class ProductImporter(djsync.Importer):
    class Meta:
        name = "bench_products"
        model = Product
        keys = ["sku"]
        fields = ["sku", "name", "price", "qty", "category", "updated"]


@djsync.register
class HookedProductImporter(ProductImporter):
    """The same rows through a per-row hook, as many real importers have: each row is
    converted in Python, one at a time (bench/scale.py --importer bench_products_hooked)."""

    class Meta(ProductImporter.Meta):
        name = "bench_products_hooked"

    def normalize_source_row(self, values: dict) -> dict:
        values["name"] = " ".join(values["name"].split())
        return values


# -- the multi-model case (bench/run.py --case multimodel): four nycflights13-like models ---


@djsync.register
class AirlineImporter(djsync.Importer):
    class Meta:
        name = "bench_airlines"
        model = Airline
        keys = ["carrier"]
        fields = ["carrier", "name"]


@djsync.register
class AirportImporter(djsync.Importer):
    class Meta:
        name = "bench_airports"
        model = Airport
        keys = ["faa"]
        fields = ["faa", "name", "lat", "lon", "alt", "tz", "dst", "tzone"]


@djsync.register
class PlaneImporter(djsync.Importer):
    class Meta:
        name = "bench_planes"
        model = Plane
        keys = ["tailnum"]
        fields = "__all__"


@djsync.register
class FlightImporter(djsync.Importer):
    carrier = djsync.Field(lookup="carrier")
    tailnum = djsync.Field(lookup="tailnum")
    origin = djsync.Field(lookup="faa")
    dest = djsync.Field(lookup="faa")

    class Meta:
        name = "bench_flights"
        model = Flight
        keys = ["year", "month", "day", "carrier", "flight", "origin", "sched_dep_time"]
        fields = [
            "year", "month", "day", "dep_time", "sched_dep_time", "dep_delay", "arr_time",
            "sched_arr_time", "arr_delay", "flight", "air_time", "distance", "hour", "minute",
            "time_hour",
        ]  # fmt: skip
