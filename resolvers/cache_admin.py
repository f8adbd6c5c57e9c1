"""Cache administration: purging everything cached about one patient (admins only)."""

from __future__ import annotations

from app.auth.scopes import CACHE_PURGE_SCOPE as PURGE_SCOPE
from app.cache.backend import CacheUnavailable
from app.cache.purge import PurgeCounts
from app.identity.index import is_patient_id
from resolvers import access
from resolvers.context import Context
from resolvers.errors import ClientError, UserInputError


class PurgeFailed(ClientError):
    """A cache backend could not be reached: nothing may be assumed purged."""

    code = "INTERNAL"


async def purge_patient_cache(ctx: Context, patient_id: str) -> PurgeCounts:
    access.require_admin(
        ctx,
        "purgePatientCache",
        PURGE_SCOPE,
        f"Only administrators whose token has the {PURGE_SCOPE} scope may purge caches",
    )
    if not is_patient_id(patient_id):
        raise UserInputError("'patientId' is not a PatientGraph patient id")
    ctx.disclosures.changed.add(patient_id)
    if ctx.services.caches is None:
        return PurgeCounts(0, 0)
    try:
        return await ctx.services.caches.purge_patient(patient_id)
    except CacheUnavailable:
        raise PurgeFailed("The cache could not be reached: retry the purge") from None
