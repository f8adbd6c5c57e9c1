"""Example queries: prefilled in GraphiQL, used by the README, the benchmarks and the tests."""

DASHBOARD_QUERY = """\
# Clinician dashboard: recent data for a page of patients, from every source at once.
query Dashboard($first: Int = 20) {
  patients(first: $first) {
    totalCount
    nodes {
      id
      name { text }
      birthDate
      sources { sourceId localId }
      observations(first: 5) {
        totalCount
        nodes {
          code { text } effective valueQuantity { value unit } valueString sources { sourceId }
        }
      }
      conditions(first: 5) { totalCount nodes { code { text } clinicalStatus onset } }
      allergies(first: 5) { totalCount nodes { code { text } criticality } }
      immunizations(first: 5) { totalCount nodes { vaccine { text } occurrence } }
      encounters(first: 5) { totalCount nodes { class start type { text } } }
    }
  }
}
"""

PORTAL_QUERY = """\
# Patient portal: my own record (needs a patient-context token).
query MyRecord {
  me {
    id
    name { text }
    birthDate
    observations(category: "laboratory", first: 10) {
      nodes { code { text } effective valueQuantity { value unit } referenceRange { text } }
    }
    medications(first: 10) { nodes { medication { text } status authoredOn dosage } }
    allergies { nodes { code { text } criticality reactions { text } } }
    immunizations { nodes { vaccine { text } occurrence } }
  }
}
"""
