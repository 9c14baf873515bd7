# Deliberately empty: importing a plain module of the project (config.errors, catalog.midi) must not
# start Celery or Django. The Celery app is loaded with Django by catalog.apps (which imports
# config.celery) and by `celery -A config`, which finds config.celery itself.
