"""The benchmark's targets: products (natural key ``sku``), and four nycflights13-like tables."""

from django.db import models


class Product(models.Model):
    sku = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    qty = models.IntegerField()
    category = models.CharField(max_length=100)
    updated = models.DateField()

    def __str__(self) -> str:
        return self.sku


# -- the multi-model case: four tables shaped like nycflights13 ----------------------------


class Airline(models.Model):
    carrier = models.CharField(max_length=8, unique=True)
    name = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.carrier


class Airport(models.Model):
    faa = models.CharField(max_length=4, unique=True)
    name = models.CharField(max_length=100)
    lat = models.FloatField()
    lon = models.FloatField()
    alt = models.IntegerField()
    tz = models.SmallIntegerField()
    dst = models.CharField(max_length=1)
    tzone = models.CharField(max_length=40)

    def __str__(self) -> str:
        return self.faa


class Plane(models.Model):
    tailnum = models.CharField(max_length=10, unique=True)
    year = models.IntegerField(null=True)
    type = models.CharField(max_length=40)
    manufacturer = models.CharField(max_length=40)
    model = models.CharField(max_length=40)
    engines = models.SmallIntegerField()
    seats = models.IntegerField()
    speed = models.IntegerField(null=True)
    engine = models.CharField(max_length=40)

    def __str__(self) -> str:
        return self.tailnum


class Flight(models.Model):
    """A flight: natural key of seven columns, three of them foreign keys by natural key."""

    year = models.SmallIntegerField()
    month = models.SmallIntegerField()
    day = models.SmallIntegerField()
    dep_time = models.IntegerField(null=True)
    sched_dep_time = models.IntegerField()
    dep_delay = models.IntegerField(null=True)
    arr_time = models.IntegerField(null=True)
    sched_arr_time = models.IntegerField()
    arr_delay = models.IntegerField(null=True)
    carrier = models.ForeignKey(Airline, on_delete=models.PROTECT)
    flight = models.IntegerField()
    tailnum = models.ForeignKey(Plane, on_delete=models.PROTECT, null=True)
    origin = models.ForeignKey(Airport, on_delete=models.PROTECT, related_name="departures")
    dest = models.ForeignKey(Airport, on_delete=models.PROTECT, related_name="arrivals")
    air_time = models.IntegerField(null=True)
    distance = models.IntegerField()
    hour = models.SmallIntegerField()
    minute = models.SmallIntegerField()
    time_hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["year", "month", "day", "carrier", "flight", "origin", "sched_dep_time"],
                name="benchapp_flight_natural_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.carrier_id}{self.flight} {self.year}-{self.month}-{self.day}"
