"""Shared fixtures. Service fixtures (RabbitMQ, Spark, callback receiver, the S3 stand-in) live in their
own modules under tests/ and are registered here as plugins so every test directory can use them."""

pytest_plugins = ["tests.spark_cluster", "tests.rabbitmq", "tests.callback_receiver",
                  "tests.cloudpickle_releases", "tests.support.s3"]
