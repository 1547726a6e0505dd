"""One model, written by a task in the worker process."""

from django.db import models


class Order(models.Model):
    item = models.CharField(max_length=100)
