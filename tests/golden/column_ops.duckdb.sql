SELECT DISTINCT ON (e."customer_id")
  CAST(e."customer_id" AS TEXT) AS "id",
  e."email" AS "email",
  e."lifetime_value" AS "ltv",
  SPLIT_PART(e."email", '@', 2) AS "domain"
FROM customers AS e
WHERE
  NOT e."customer_id" IS NULL
  AND (
    COALESCE((
      e."lifetime_value" >= 500
    ), FALSE)
    AND COALESCE((
      e."country" IN ('US', 'DE')
    ), FALSE)
    AND COALESCE((
      NOT e."country" IN ('FR')
    ), FALSE)
    AND COALESCE((
      e."lifetime_value" BETWEEN 100 AND 900
    ), FALSE)
    AND NOT e."email" IS NULL
    AND COALESCE((
      STRPOS(e."email", '50%_off') > 0
    ), FALSE)
    AND COALESCE((
      STARTS_WITH(e."email", 'ann')
    ), FALSE)
    AND COALESCE((
      RIGHT(e."email", 4) = '.com'
    ), FALSE)
    AND COALESCE((
      e."signup_at" < CAST('2026-10-29 12:00:00' AS TIMESTAMP)
    ), FALSE)
    AND COALESCE((
      e."is_vip" <> FALSE
    ), FALSE)
  )
