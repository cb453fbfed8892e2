"""The directory's data: accounts, groups and who is in which group."""

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

#: The demo's stand-in for a business rule of the external system: it refuses addresses in
#: this domain, so a sync meets a row the target refuses (a row error), not just bad input.
REFUSED_EMAIL_DOMAIN = "@refused.invalid"

validate_group_name = RegexValidator(
    r"^[\w.-]+\Z", "Enter a group name of letters, digits, '.', '-' or '_'."
)


class Group(models.Model):
    name = models.CharField(
        max_length=100,
        unique=True,
        validators=[validate_group_name],
        error_messages={"unique": "group with this name already exists."},
    )
    description = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Account(models.Model):
    username = models.CharField(
        max_length=150,
        unique=True,
        error_messages={"unique": "account with this username already exists."},
    )
    email = models.EmailField(blank=True)
    full_name = models.CharField(max_length=200)
    active = models.BooleanField(default=True)
    department = models.CharField(max_length=100, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["username"]

    def __str__(self) -> str:
        return self.username

    def clean(self) -> None:
        if self.email.lower().endswith(REFUSED_EMAIL_DOMAIN):
            raise ValidationError({"email": "this domain is refused by the directory"})


class Membership(models.Model):
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="memberships")
    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="memberships")

    class Meta:
        unique_together = [("account", "group")]

    def __str__(self) -> str:
        return f"{self.account} in {self.group}"
