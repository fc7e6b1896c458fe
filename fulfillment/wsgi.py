import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fulfillment.settings")
application = get_wsgi_application()

# Django, the apps and the modules they import live as long as the worker: frozen, they are
# left out of the garbage collector's full collections, which walked about 130,000 objects
# and paused a request for up to 60 ms; now they walk what the requests made.
gc.freeze()
