"""The API's routes, one module per resource. Each module's `router(...)` builds its
APIRouter around the ApiService, so routes hold no global state."""
