"""Models the tests sync into: one per kind of field and key the engine must handle."""

import uuid

from django.db import models
from simple_history.models import HistoricalRecords


class Category(models.Model):
    code = models.CharField(max_length=20, unique=True)
    name = models.CharField(max_length=100)


class Product(models.Model):
    sku = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    qty = models.IntegerField(default=0)
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.PROTECT)
    region = models.CharField(max_length=10, default="eu")
    updated = models.DateField(null=True, blank=True)
    active = models.BooleanField(default=True)


class Member(models.Model):
    """Composite natural key, every converter type, choices."""

    class Level(models.TextChoices):
        GOLD = "gold", "Gold member"
        SILVER = "silver", "Silver member"

    team = models.CharField(max_length=10)
    number = models.IntegerField()
    name = models.CharField(max_length=100)
    nickname = models.CharField(max_length=50, blank=True)
    note = models.TextField(null=True, blank=True)
    score = models.FloatField(null=True, blank=True)
    joined = models.DateField(null=True, blank=True)
    seen = models.DateTimeField(null=True, blank=True)
    alarm = models.TimeField(null=True, blank=True)
    vip = models.BooleanField(default=False)
    level = models.CharField(max_length=10, choices=Level.choices, default=Level.SILVER)
    token = models.UUIDField(null=True, blank=True)
    extra = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "number"], name="member_key")]


class Employee(models.Model):
    """A member of teams (many-to-many membership sync)."""

    number = models.IntegerField(unique=True)
    name = models.CharField(max_length=100)
    department = models.CharField(max_length=20, blank=True)


class Team(models.Model):
    code = models.CharField(max_length=20, unique=True)
    name = models.CharField(max_length=100, blank=True)
    members = models.ManyToManyField(Employee, related_name="teams", blank=True)


def validate_even(value: int) -> None:
    """A model field's own validator (tests/test_hostile_values.py)."""
    from django.core.exceptions import ValidationError

    if value % 2:
        raise ValidationError("%(value)s is not an even number", params={"value": value})


class Gauge(models.Model):
    """One field of each type a converter must guard (tests/test_hostile_values.py)."""

    code = models.CharField(max_length=20, unique=True)
    small = models.SmallIntegerField(null=True, blank=True)
    medium = models.IntegerField(null=True, blank=True)
    big = models.BigIntegerField(null=True, blank=True)
    psmall = models.PositiveSmallIntegerField(null=True, blank=True)
    positive = models.PositiveIntegerField(null=True, blank=True)
    pbig = models.PositiveBigIntegerField(null=True, blank=True)
    ratio = models.FloatField(null=True, blank=True)
    amount = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True)
    label = models.CharField(max_length=30, blank=True)
    text = models.TextField(blank=True)
    day = models.DateField(null=True, blank=True)
    email = models.EmailField(blank=True)
    url = models.URLField(blank=True)
    slug = models.SlugField(blank=True)
    even = models.IntegerField(null=True, blank=True, validators=[validate_even])
    active = models.BooleanField(default=False)
    data = models.JSONField(null=True, blank=True)


class Shelf(models.Model):
    """A foreign key to another field than the primary key (``to_field``)."""

    code = models.CharField(max_length=20, unique=True)
    category = models.ForeignKey(
        Category,
        to_field="code",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="shelves",
    )


class Book(models.Model):
    """A model with django-simple-history's records (tests/test_batch_signals.py)."""

    code = models.CharField(max_length=20, unique=True)
    title = models.CharField(max_length=100)
    copies = models.IntegerField(default=0)
    history = HistoricalRecords()


class Edition(models.Model):
    """Every django-simple-history option djsync writes in SQL (tests/test_history_sql.py):
    a foreign key, an excluded field, a UUID history_id, a user id field, a relation."""

    isbn = models.CharField(max_length=20, unique=True)
    book = models.ForeignKey(Book, null=True, blank=True, on_delete=models.PROTECT)
    title = models.CharField(max_length=100)
    price = models.DecimalField(max_digits=8, decimal_places=2)
    printed = models.DateField(null=True, blank=True)
    sold = models.DateTimeField(null=True, blank=True)
    signed = models.BooleanField(default=False)
    notes = models.TextField(blank=True)
    history = HistoricalRecords(
        excluded_fields=["notes"],
        history_id_field=models.UUIDField(default=uuid.uuid4),
        history_user_id_field=models.IntegerField(null=True, blank=True),
        history_change_reason_field=models.TextField(null=True),
        related_name="snapshots",
    )


class Provenance(models.Model):
    """A history base class with a field of its own, filled by a Python default."""

    origin = models.CharField(max_length=20, default="python")

    class Meta:
        abstract = True


class Pamphlet(models.Model):
    """A history model djsync cannot fill in SQL: bulk_history_create writes it."""

    code = models.CharField(max_length=20, unique=True)
    title = models.CharField(max_length=100)
    history = HistoricalRecords(bases=[Provenance])


class Listing(models.Model):
    """A shop's listing: the source model of the real-time tests (tests/test_realtime.py)."""

    sku = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    qty = models.IntegerField(default=0)
    active = models.BooleanField(default=True)
